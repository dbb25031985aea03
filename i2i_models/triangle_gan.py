"""(in progress this session: the family is being built in this file)"""
