"""The lesson's own steps, computed from the loaded models: the quiz, the diagram's plan, anatomy, knowledge."""
