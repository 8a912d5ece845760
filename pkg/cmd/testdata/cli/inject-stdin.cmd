inject -f -
