inject -f testdata/cli/in/cronjob.yaml
