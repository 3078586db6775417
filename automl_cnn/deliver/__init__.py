"""What a user takes home: the delivered model written and registered, the report, the pictures
and the result object.
"""
