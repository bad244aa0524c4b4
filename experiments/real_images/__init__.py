"""The real-image benchmark (``make bench-real``): ELPV's mono solar cells, MultiTypeFCDD against three references."""
