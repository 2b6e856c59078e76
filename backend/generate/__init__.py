"""backend.generate"""
