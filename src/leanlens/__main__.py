from leanlens.cli import app

app(prog_name="leanlens")
