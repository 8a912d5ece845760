inject -f testdata/cli/in/denied.yaml
