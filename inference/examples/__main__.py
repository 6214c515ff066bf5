import argparse

from inference.examples import build


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m inference.examples", description=build.__doc__)
    parser.add_argument("--data", help="PhysioNet data folder (default $CARDIOSPIKE_DATA_DIR)")
    print(f"wrote {build(parser.parse_args().data)}")


if __name__ == "__main__":
    main()
