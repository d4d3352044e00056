"""Turning files into chunks and keeping the index in step with them."""
