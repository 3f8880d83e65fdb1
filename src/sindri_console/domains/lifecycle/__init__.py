"""Instance lifecycle: suspend, resume, backup, destroy as jobs run by the Sindri CLI (10-core §6)."""
