FROM busybox
COPY a /a

RUNN echo hi
