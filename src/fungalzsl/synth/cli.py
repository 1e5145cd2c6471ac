import typer

app = typer.Typer(help="Generate the synthetic fungi dataset (not implemented yet).")
