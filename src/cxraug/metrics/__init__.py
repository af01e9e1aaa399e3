"""cxraug.metrics"""
