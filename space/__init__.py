"""The LM-Action Gradio Space (`space.app`): classify commands in the browser or via the API."""
