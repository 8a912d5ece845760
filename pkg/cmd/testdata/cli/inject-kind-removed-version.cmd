inject -f testdata/cli/in/deployment-extensions.yaml
