"""backend.geometry"""
