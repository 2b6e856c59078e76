"""backend.render"""
