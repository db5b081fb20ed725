# Type stub of the compiled module built from src/optim.pyx: its functions are typed there, in
# Cython; type checkers see them as Any (the backend, fastconv/_backend/cpu.py, is the typed interface).
from typing import Any

def __getattr__(name: str) -> Any: ...
