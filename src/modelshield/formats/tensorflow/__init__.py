"""tensorflow"""
