"""cxraug.data"""
