"""Scale-out backends: state shared by several gateway replicas through Redis."""
