"""The Hugging Face Hub release: cards, the staged folders with their manifest, and publishing."""
