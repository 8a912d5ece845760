inject -f testdata/cli/in/no-such-file.yaml
