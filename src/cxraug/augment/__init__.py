"""cxraug.augment"""
