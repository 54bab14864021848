"""Getting GPT-2's weights into a model: the reference, the mapping table and its loader, the mistakes."""
