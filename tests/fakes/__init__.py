"""Test doubles shared by several test packages (a fake `sindri` executable, …)."""
