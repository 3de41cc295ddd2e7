"""The pure core: grid expansion, naming, Job rendering (templates/), reconciling. No I/O."""
