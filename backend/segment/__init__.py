"""backend.segment"""
