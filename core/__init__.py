"""The bottom layer: errors, redaction, the config schema and loading. Imports nothing else
from the project; everything above may import it."""
