"""The data contract and what every stage shares: the labels and columns (`schema`), the decision
policy (`decision`), presets (`config`), file readers and writers (`io`), the host (`host`) and
the text forms attackers use (`text_forms`). Imports nothing from the other subpackages."""
