"""Which outputs a run keeps and how they are reduced before they are stored."""
