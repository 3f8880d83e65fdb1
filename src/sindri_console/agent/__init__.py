"""The Sindri Console agent (`sindri-console agent`): runs on an instance and talks to the console."""
