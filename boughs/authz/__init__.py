"""What an actor may touch. Every read and write goes through ``scope_for``."""
