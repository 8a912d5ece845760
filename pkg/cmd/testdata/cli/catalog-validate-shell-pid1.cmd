catalog validate testdata/cli/in/shell-pid1.yaml
