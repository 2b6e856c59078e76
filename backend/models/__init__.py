"""backend.models"""
