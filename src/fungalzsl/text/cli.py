import typer

app = typer.Typer(help="Describe classes with LLMs (not implemented yet).")
