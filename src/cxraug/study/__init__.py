"""cxraug.study"""
