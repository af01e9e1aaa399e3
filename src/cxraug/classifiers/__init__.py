"""cxraug.classifiers"""
