# escape=`
# Windows-style escape: backslashes are plain characters.
FROM busybox
COPY C:\data\file.txt `
     /data/
RUN echo `$HOME `
    && echo done
