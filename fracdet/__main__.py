from fracdet.cli import run

run()
