"""cxraug.report"""
