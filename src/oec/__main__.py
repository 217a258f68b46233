from oec.cli import app

app()
