from oec.cli.main import app

app()
