"""backend.server"""
