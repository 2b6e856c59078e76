"""backend.world"""
