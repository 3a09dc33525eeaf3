from dsa_bench.cli import main

main()
