"""Model families (template, box convention, resize rule, vocabulary) and their tiny checkpoints."""
