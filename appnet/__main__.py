"""
C{python -m appnet}: the same as the C{appnet} command.
"""

from appnet.cli import main

main()
