"""backend.stylize"""
