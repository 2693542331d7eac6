"""Renderers: Issue/Edition in, HTML, text, feed bytes and site files out.

Rule: nothing in this package touches the network, the subscriber store or a transport.
"""
