"""backend.retrieve"""
