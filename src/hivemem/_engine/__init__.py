"""One reclamation pass: the Strategy protocol, the registry, the engine and its measured report."""
