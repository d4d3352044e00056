"""Gradio chat interface; calls the service layer only."""
