from lamp.cli import app

app(prog_name="lamp")
