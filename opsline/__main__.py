from opsline.cli import app

app(prog_name="opsline")
