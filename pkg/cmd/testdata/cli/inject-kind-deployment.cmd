inject -f testdata/cli/in/deployment.yaml
